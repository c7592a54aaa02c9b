from tortoise import migrations
from tortoise.migrations import operations as ops
from gateway.db.models import OrderStatus
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='Order',
            name='status',
            field=fields.CharEnumField(default=OrderStatus.CREATED, description='CREATED: created\nPENDING: pending\nSETTLED: settled\nFAILED: failed\nREVERSED: reversed\nNEEDS_REVIEW: needs_review', enum_type=OrderStatus, max_length=16),
        ),
        ops.AddField(
            model_name='Order',
            name='paid_minor',
            field=fields.BigIntField(null=True),
        ),
    ]
